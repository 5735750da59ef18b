package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"
)

// canPrompt reports whether a person is there to answer: standard input
// or standard error is a terminal. Prompts go through /dev/tty, so that
// 'echo hi | qrtalk send bob -' can still ask for a passphrase.
func (a *app) canPrompt() bool { return a.stdinTTY || a.stderrTTY }

// openTTY opens the controlling terminal.
func openTTY() (*os.File, error) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("no terminal to ask on: %w", err)
	}
	return f, nil
}

// readSecret asks for a secret on the terminal, without echo.
func (a *app) readSecret(prompt string) (string, error) {
	tty, err := openTTY()
	if err != nil {
		return "", err
	}
	defer tty.Close()
	fmt.Fprint(tty, prompt)
	var b []byte
	if term.IsTerminal(int(tty.Fd())) {
		b, err = term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
	} else {
		var line string
		line, err = bufio.NewReader(tty).ReadString('\n')
		b = []byte(strings.TrimRight(line, "\r\n"))
	}
	if err != nil {
		return "", fmt.Errorf("reading the passphrase: %w", err)
	}
	return string(b), nil
}

// confirm asks a yes/no question on the terminal; no is the default.
func (a *app) confirm(question string) (bool, error) {
	tty, err := openTTY()
	if err != nil {
		return false, err
	}
	defer tty.Close()
	fmt.Fprintf(tty, "%s [y/N] ", question)
	line, err := bufio.NewReader(tty).ReadString('\n')
	if err != nil && line == "" {
		return false, errors.New("no answer")
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
