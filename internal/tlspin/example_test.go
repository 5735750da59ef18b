package tlspin_test

import (
	"fmt"
	"net/http"

	"github.com/qrtalk/qrtalk/internal/tlspin"
	"github.com/qrtalk/qrtalk/protocol"
)

// A client that scanned an invite talks to the server it names, trusting
// nothing but the fingerprint in the invite.
func ExampleConfig() {
	inv, err := protocol.ParseInvite("qrtalk:invite?v=1&s=https%3A%2F%2Fchat.example.org%3A8443&sfp=n3MmKgJLaU4xpSw9DGlKG_ZU35_RIQZuSF3zP9lSwjk&t=Qz_DAqsSNNvRGsXJrlVRov91")
	if err != nil {
		fmt.Println(err)
		return
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlspin.Config(inv.ServerFP)}}
	resp, err := client.Get(inv.Server + "/v1/info")
	if err != nil {
		fmt.Println(err) // tlspin.ErrMismatch if another key answered
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
}
