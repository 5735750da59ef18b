package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/server"
	"github.com/qrtalk/qrtalk/internal/store/sqlite"
	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// testServer is a real qrtalkd server, in-process, on a TLS listener and
// a SQLite file, with open registration.
type testServer struct {
	url    string
	fp     protocol.Fingerprint
	invite string
	close  func()
}

// startServer starts a server keeping its files in dir.
func startServer(dir string) (*testServer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "server.db"), sqlite.Options{})
	if err != nil {
		return nil, err
	}
	key := testkeys.Key(7)
	srv, err := server.New(server.Options{Store: st, Key: key, BlobDir: filepath.Join(dir, "blobs"),
		Registration: server.RegistrationOpen, IPRate: 1e6, IPBurst: 1e6, DeviceRate: 1e6, DeviceBurst: 1e6,
		DirectoryRate: 1e6, DirectoryBurst: 1e6})
	if err != nil {
		st.Close()
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(key.Bytes())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "qrtalk test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.(crypto.Signer).Public(), k)
	if err != nil {
		return nil, err
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}}}
	ts.StartTLS()
	s := &testServer{url: ts.URL, fp: protocol.ServerFingerprint(key.Public())}
	s.invite = protocol.Invite{Server: s.url, ServerFP: s.fp, Token: "open-registration-token"}.URI()
	s.close = func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		st.Close()
	}
	return s, nil
}

// rejoinAs registers a new identity (fixed test keys) under an existing,
// deleted user ID, as someone who lost their device and re-registered
// would, and saves its account in dir. Contacts who pinned the old key
// then see it CHANGED.
func rejoinAs(ctx context.Context, invite string, user protocol.UserID, dir string) error {
	inv, err := protocol.ParseInvite(invite)
	if err != nil {
		return err
	}
	dev, err := client.NewDeviceFromKeys(user, protocol.NewDeviceID(), testkeys.Key(0), testkeys.Key(1), testkeys.Key(2), time.Now())
	if err != nil {
		return err
	}
	conn, err := client.Register(ctx, client.Options{Server: inv.Server, ServerFP: inv.ServerFP}, dev, inv.Token)
	if err != nil {
		return err
	}
	acc, err := client.Adopt(dir, dev, conn, client.AccountOptions{})
	if err != nil {
		return err
	}
	return acc.Close()
}

// forge sends, from the account in dir, a message to a contact whose
// signature is made with another identity key than the sender's: what an
// attacker holding a device key but not the identity key could send. The
// recipient must show it as invalid, never its content.
func forge(ctx context.Context, dir, to, text string) error {
	acc, err := client.OpenAccount(dir, client.AccountOptions{})
	if err != nil {
		return err
	}
	defer acc.Close()
	ct, err := acc.Contact(ctx, to)
	if err != nil {
		return err
	}
	conn, err := acc.Conn(ctx)
	if err != nil {
		return err
	}
	certs, err := conn.Devices(ctx, ct.User, ct.Identity)
	if err != nil {
		return err
	}
	var rcpts []protocol.DeviceRecipient
	for _, c := range certs {
		rcpts = append(rcpts, protocol.DeviceRecipient{User: c.User, Device: c.Device, Key: c.EncryptionKey})
	}
	if len(rcpts) == 0 {
		return fmt.Errorf("%s has no devices", to)
	}
	dev := acc.Device()
	wrongKey := testkeys.Key(5)
	env, err := protocol.Seal(&protocol.Message{ContentType: client.ContentText, Body: []byte(text)},
		protocol.Sender{User: dev.User, Device: dev.ID, Identity: wrongKey}, rcpts,
		protocol.SealOptions{Sent: time.Now(), TTL: time.Hour})
	if err != nil {
		return err
	}
	_, err = conn.Send(ctx, env)
	return err
}

// accountInfo returns what the account in dir shows of itself: its user
// ID, its device ID, its contact code and its numeric fingerprint.
func accountInfo(dir, passphrase string) (user, device, code, fingerprint string, err error) {
	acc, err := client.OpenAccount(dir, client.AccountOptions{Passphrase: passphrase})
	if err != nil {
		return "", "", "", "", err
	}
	defer acc.Close()
	dev := acc.Device()
	return dev.User.String(), dev.ID.String(), acc.ContactCard().URI(), dev.Fingerprint().Numeric(), nil
}
