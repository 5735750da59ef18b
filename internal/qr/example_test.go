package qr_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/qrtalk/qrtalk/internal/qr"
)

func ExampleTerminal() {
	// Light modules are drawn, for the usual dark terminal background.
	code, err := qr.Terminal("qrtalk:", qr.TerminalOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(code)
	// Output:
	// █████████████████████████████
	// █████████████████████████████
	// ████ ▄▄▄▄▄ █▀▄██▀█ ▄▄▄▄▄ ████
	// ████ █   █ ██    █ █   █ ████
	// ████ █▄▄▄█ █▄ ██ █ █▄▄▄█ ████
	// ████▄▄▄▄▄▄▄█▄▀ ▀ █▄▄▄▄▄▄▄████
	// ████▄█ ▀ █▄█▀▀▄▄██▀▀▄▀█▄▀████
	// ████ ▀▄██▀▄▀ █ █▄█▀▀ ██▄▄████
	// ████▄▄█▄█▄▄█▀  ▀▄▀▄█▀▄██ ████
	// ████ ▄▄▄▄▄ ████ ▀ ▄█ █▄▄ ████
	// ████ █   █ █▄ ▀▄█▄ ▀▀▀█ ▄████
	// ████ █▄▄▄█ █▄█▀█▄█▀ ▄▄▄▀▄████
	// ████▄▄▄▄▄▄▄█▄███▄█▄▄███▄▄████
	// █████████████████████████████
	// ▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀
}

func ExamplePNG() {
	const invite = "qrtalk:invite?v=1&s=https%3A%2F%2Fchat.example.org%3A8443"
	png, err := qr.PNG(invite, 0)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "qr")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "invite.png")
	if err := os.WriteFile(path, png, 0o600); err != nil {
		log.Fatal(err)
	}

	text, err := qr.DecodeFile(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(text)
	// Output: qrtalk:invite?v=1&s=https%3A%2F%2Fchat.example.org%3A8443
}
