package admin

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// apiClient is the JSON API client of the `caddy tagcache` command.
type apiClient struct {
	base               *url.URL
	username, password string
	http               *http.Client
}

// newAPIClient returns a client of the API at address (a URL; http:// is
// assumed without a scheme), trusting the CA certificates in the PEM file
// caCert if it is not "".
func newAPIClient(address, username, password, caCert string) (*apiClient, error) {
	if !strings.Contains(address, "://") {
		address = "http://" + address
	}
	base, err := url.Parse(address)
	if err != nil || base.Host == "" || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("invalid address %q: want a URL such as http://localhost:8888 or https://cache.example.com/prefix", address)
	}
	if username != "" && password == "" {
		return nil, errors.New("a password is required with a username: set --password or TAGCACHE_PASSWORD")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if caCert != "" {
		pem, err := os.ReadFile(caCert)
		if err != nil {
			return nil, fmt.Errorf("reading the CA certificate: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificate in %s", caCert)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &apiClient{
		base:     base,
		username: username,
		password: password,
		http:     &http.Client{Transport: transport, Timeout: 30 * time.Second},
	}, nil
}

// endpoint returns the URL of the API path (already escaped) with query.
func (c *apiClient) endpoint(escapedPath string, query url.Values) *url.URL {
	u := *c.base
	prefix := strings.TrimSuffix(c.base.EscapedPath(), "/")
	unescaped, _ := url.PathUnescape(prefix + escapedPath)
	u.Path, u.RawPath = unescaped, prefix+escapedPath
	u.RawQuery = query.Encode()
	return &u
}

// errorResponse is the API's error body.
type errorResponse struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// do sends a request with reqBody as JSON (none if nil) and decodes the
// response into out. It fails for a transport error and for a status that
// is not 2xx or one of accept, with the API's reason.
func (c *apiClient) do(method, escapedPath string, query url.Values, reqBody, out any, accept ...int) (int, error) {
	var body io.Reader
	if reqBody != nil {
		data, err := json.Marshal(reqBody)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(data)
	}
	u := c.endpoint(escapedPath, query)
	req, err := http.NewRequest(method, u.String(), body)
	if err != nil {
		return 0, err
	}
	if reqBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.username != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if uerr, ok := errors.AsType[*url.Error](err); ok {
			err = uerr.Err // the URL is in the message already
		}
		return 0, fmt.Errorf("cannot reach the tagcache API at %s: %v", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("reading the response of %s: %v", u.Redacted(), err)
	}
	if resp.StatusCode/100 != 2 && !slices.Contains(accept, resp.StatusCode) {
		return resp.StatusCode, statusError(resp, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s answered %s, which is not the tagcache JSON API's: %.200q", u.Redacted(), resp.Status, data)
		}
	}
	return resp.StatusCode, nil
}

// statusError explains a failed request.
func statusError(resp *http.Response, data []byte) error {
	var e errorResponse
	reason := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		reason = e.Error
		if e.Message != "" { // Error is a code that Message explains
			reason = e.Message
		}
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return fmt.Errorf("authentication failed (%s); set --username and --password, or TAGCACHE_USERNAME and TAGCACHE_PASSWORD", reason)
	case http.StatusForbidden:
		return fmt.Errorf("forbidden: %s", reason)
	default:
		return fmt.Errorf("%s: %s", resp.Status, reason)
	}
}
