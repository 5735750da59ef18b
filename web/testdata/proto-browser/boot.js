// boot.js: a module that does not load or throws outside its checks still
// ends the run, so that TestProtoInChromium fails at once instead of waiting.
window.addEventListener("error", (e) => console.log(`SMOKE DONE pass=0 fail=1 (error: ${e.message})`));
window.addEventListener("unhandledrejection", (e) => console.log(`SMOKE DONE pass=0 fail=1 (unhandled: ${e.reason})`));
