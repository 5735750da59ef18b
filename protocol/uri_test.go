package protocol

import "testing"

func TestCheckServerURL(t *testing.T) {
	good := map[string]string{
		"https://chat.example.org":              "https://chat.example.org",
		"HTTPS://Chat.Example.ORG:8443/qrtalk/": "https://chat.example.org:8443/qrtalk",
		"https://chat.example.org//":            "https://chat.example.org",
		"https://[2001:DB8::1]/x":               "https://[2001:db8::1]/x",
		"https://127.0.0.1:443":                 "https://127.0.0.1:443",
		"https://h/a%2Fb":                       "https://h/a%2Fb",
	}
	for in, want := range good {
		got, err := CheckServerURL(in)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
		if again, err := CheckServerURL(got); err != nil || again != got {
			t.Errorf("%q: not idempotent: %q, %v", got, again, err)
		}
	}
	for _, in := range []string{
		"http://h", "https://", "https://h?", "https://h#", "https://u@h", "https://h:", "https://h:0",
		"https://h:08443", "https://h:65536", "https://h/<", "https://h\u212a", "https://a%25b",
		"https://[fe80::1%25eth0]", "https://[::1", "https://[::1]x", "https://h/%zz", "https://h b",
		"https://h:+443", "https://[::1]:+80",
	} {
		if got, err := CheckServerURL(in); err == nil {
			t.Errorf("%q: accepted as %q", in, got)
		}
	}
}
