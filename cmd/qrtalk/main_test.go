package main

import (
	"context"
	"errors"
	"image"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/qrtalk/qrtalk/internal/qr"
	"github.com/qrtalk/qrtalk/protocol"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"qrtalk": main})
}

// TestScripts runs testdata/*.txtar: each script drives the real qrtalk
// command against its own in-process qrtalkd (open registration), whose
// invite is in $INVITE.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			srv, err := startServer(filepath.Join(env.WorkDir, ".server"))
			if err != nil {
				return err
			}
			env.Defer(srv.close)
			env.Setenv("INVITE", srv.invite)
			env.Setenv("SERVER_URL", srv.url)
			// No account by default: HOME has none, and scripts choose one
			// with --home.
			env.Setenv("HOME", env.WorkDir)
			env.Setenv("XDG_DATA_HOME", "")
			env.Setenv("QRTALK_HOME", "")
			env.Setenv("QRTALK_PASSPHRASE", "")
			env.Setenv("TZ", "UTC")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// whois HOME PREFIX: set $PREFIX_ID, $PREFIX_DEV, $PREFIX_CODE
			// and $PREFIX_FP to the user ID, device ID, contact code and
			// numeric fingerprint of the account in HOME.
			"whois": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: whois HOME PREFIX")
				}
				id, dev, code, fp, err := accountInfo(ts.MkAbs(args[0]), ts.Getenv("QRTALK_PASSPHRASE"))
				ts.Check(err)
				ts.Setenv(args[1]+"_ID", id)
				ts.Setenv(args[1]+"_DEV", dev)
				ts.Setenv(args[1]+"_CODE", code)
				ts.Setenv(args[1]+"_FP", fp)
			},
			// rejoin USERID NEWHOME: register a new identity under a
			// deleted user ID (a key change seen by its contacts).
			"rejoin": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: rejoin USERID NEWHOME")
				}
				u, err := protocol.ParseUserID(args[0])
				ts.Check(err)
				ts.Check(rejoinAs(context.Background(), ts.Getenv("INVITE"), u, ts.MkAbs(args[1])))
			},
			// forge FROMHOME CONTACT TEXT: send a message signed with the
			// wrong identity key.
			"forge": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 3 {
					ts.Fatalf("usage: forge FROMHOME CONTACT TEXT")
				}
				ts.Check(forge(context.Background(), ts.MkAbs(args[0]), args[1], args[2]))
			},
			// qrpng VAR FILE: write $VAR's text as a QR code PNG.
			"qrpng": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: qrpng VAR FILE")
				}
				img, err := qr.PNG(ts.Getenv(args[0]), 0)
				ts.Check(err)
				ts.Check(os.WriteFile(ts.MkAbs(args[1]), img, 0o644))
			},
			// status N COMMAND [ARGS...]: run COMMAND, which must exit with
			// status N; its output is checked like exec's.
			"status": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 2 {
					ts.Fatalf("usage: status N COMMAND [ARGS...]")
				}
				want, err := strconv.Atoi(args[0])
				ts.Check(err)
				err = ts.Exec(args[1], args[2:]...)
				got := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					got = ee.ExitCode()
				} else {
					ts.Check(err)
				}
				if got != want {
					ts.Fatalf("exit status %d, want %d", got, want)
				}
			},
			// waitfile FILE: wait (a minute at most) until FILE exists.
			"waitfile": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: waitfile FILE")
				}
				deadline := time.Now().Add(time.Minute)
				for {
					if _, err := os.Stat(ts.MkAbs(args[0])); err == nil {
						return
					}
					if time.Now().After(deadline) {
						ts.Fatalf("%s did not appear within a minute", args[0])
					}
					time.Sleep(20 * time.Millisecond)
				}
			},
			// setvar FILE REGEXP VAR: set $VAR to the first submatch of
			// REGEXP in FILE ("stdout" for the last command's).
			"setvar": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 3 {
					ts.Fatalf("usage: setvar FILE REGEXP VAR")
				}
				m := regexp.MustCompile("(?m)" + args[1]).FindStringSubmatch(ts.ReadFile(args[0]))
				if len(m) < 2 {
					ts.Fatalf("no match for %s in %s", args[1], args[0])
				}
				ts.Setenv(args[2], m[1])
			},
			// envfile VAR FILE: write $VAR's value and a newline to FILE.
			"envfile": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: envfile VAR FILE")
				}
				ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(ts.Getenv(args[0])+"\n"), 0o600))
			},
			// termqr [-invert]: the QR code drawn in the last command's
			// stdout decodes to its "Contact code:" line.
			"termqr": func(ts *testscript.TestScript, neg bool, args []string) {
				invert := len(args) == 1 && args[0] == "-invert"
				out := ts.ReadFile("stdout")
				var code, drawing string
				for _, l := range strings.Split(out, "\n") {
					if v, ok := strings.CutPrefix(l, "Contact code:"); ok {
						code = strings.TrimSpace(v)
					}
					if strings.ContainsAny(l, "█▀▄") {
						drawing += l + "\n"
					}
				}
				got, err := decodeTerminalQR(drawing, invert)
				ts.Check(err)
				if got != code || code == "" {
					ts.Fatalf("the QR code holds %q, the text says %q", got, code)
				}
			},
		},
	})
}

// decodeTerminalQR turns a code drawn by qr.Terminal back into an image
// (drawn half blocks are light modules, dark ones when inverted) and
// decodes it.
func decodeTerminalQR(text string, invert bool) (string, error) {
	var rows [][]bool
	for _, line := range strings.Split(strings.Trim(text, "\n"), "\n") {
		var top, bottom []bool
		for _, r := range line {
			top = append(top, r == '█' || r == '▀')
			bottom = append(bottom, r == '█' || r == '▄')
		}
		rows = append(rows, top, bottom)
	}
	if len(rows) == 0 {
		return "", errors.New("no code")
	}
	const scale, margin = 4, 4
	w, h := len(rows[0]), len(rows)
	img := image.NewGray(image.Rect(0, 0, (w+2*margin)*scale, (h+2*margin)*scale))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y, row := range rows {
		for x, drawn := range row {
			if drawn != invert { // drawn: light, unless inverted
				continue
			}
			for dy := 0; dy < scale; dy++ {
				for dx := 0; dx < scale; dx++ {
					img.SetGray((x+margin)*scale+dx, (y+margin)*scale+dy, color.Gray{})
				}
			}
		}
	}
	return qr.Decode(img)
}
