package daemon_test

import (
	"context"
	"fmt"

	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/internal/daemon"
)

// Embedding qrtalkd: start it on a free port, print what clients need,
// and shut it down.
func ExampleStart() {
	cfg, err := config.Load([]string{"--data", "/tmp/qrtalkd-example", "--listen", "127.0.0.1:0"}, config.Environment{})
	if err != nil {
		fmt.Println(err)
		return
	}
	d, err := daemon.Start(context.Background(), cfg, daemon.Options{})
	if err != nil {
		fmt.Println(err, config.Hint(err))
		return
	}
	fmt.Println(d.URL(), d.Fingerprint())

	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	d.Shutdown(ctx)
	if err := d.Wait(); err != nil {
		fmt.Println(err)
	}
}
