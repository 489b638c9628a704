// apicheck: the smoke test's probe of the apiserver from inside a pod (stack/node.sh smoke), as
// an in-cluster client would do it: it resolves the URL's host through the pod's DNS (CoreDNS),
// verifies the apiserver's certificate against the service account's CA, authenticates with the
// service account token, and prints the response body. (busybox's wget cannot do this: its TLS
// client crashes on the apiserver's handshake.)
//
//	apicheck [URL]   default https://kubernetes.default.svc.cluster.local/version
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"

func main() {
	url := "https://kubernetes.default.svc.cluster.local/version"
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	ca, err := os.ReadFile(sa + "ca.crt")
	if err != nil {
		fail(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		fail(fmt.Errorf("no certificate in %sca.crt", sa))
	}
	token, err := os.ReadFile(sa + "token")
	if err != nil {
		fail(err)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		fail(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		fail(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	os.Stdout.Write(body)
	if resp.StatusCode != http.StatusOK {
		fail(fmt.Errorf("%s: %s", url, resp.Status))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "apicheck:", err)
	os.Exit(1)
}
