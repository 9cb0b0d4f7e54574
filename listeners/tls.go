package listeners

import (
	"crypto/tls"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"
)

// TLS configures TLS on a listener. Certificates come from Caddy's tls app,
// which obtains and renews them like those of Caddy's sites.
type TLS struct {
	// Names are the DNS names or IP addresses the certificate is for; the
	// first is also the one served to clients that send no server name.
	// Names that cannot have a public certificate (localhost, IP
	// addresses, internal names) get one from Caddy's internal CA, others
	// from the tls app's automation policies (a public ACME CA unless
	// configured otherwise). Default: the listener's host, or localhost if
	// it has none.
	Names []string `json:"names,omitempty"`

	// Internal issues the certificates from Caddy's internal CA (the pki
	// app's "local" CA) whatever the names. Clients must trust that CA's
	// root. Default: false.
	Internal bool `json:"internal,omitempty"`
}

// listenerTLS is the provisioned TLS of a listener.
type listenerTLS struct {
	app      *caddytls.TLS
	names    map[string]struct{}
	policies caddytls.ConnectionPolicies
}

// provision gets the tls app, adds an internal-CA automation policy for
// the names that need one, and prepares the connection policy. alpn is the
// protocol name offered in ALPN, so that Caddy's HTTP defaults (h2,
// http/1.1) are not.
func (t *TLS) provision(ctx caddy.Context, defaultName, alpn string) (*listenerTLS, error) {
	names := t.Names
	if len(names) == 0 {
		names = []string{defaultName}
	}
	appIface, err := ctx.App("tls")
	if err != nil {
		return nil, fmt.Errorf("getting tls app: %v", err)
	}
	lt := &listenerTLS{app: appIface.(*caddytls.TLS), names: make(map[string]struct{}, len(names))}

	var internal []string
	for _, name := range names {
		if name == "" {
			return nil, fmt.Errorf("empty certificate name")
		}
		lt.names[name] = struct{}{}
		if lt.hasPolicyFor(name) {
			continue // configured by the user or another listener
		}
		if t.Internal || certmagic.SubjectIsIP(name) || !certmagic.SubjectQualifiesForPublicCert(name) {
			internal = append(internal, name)
		}
	}
	if len(internal) > 0 {
		issuer := new(caddytls.InternalIssuer)
		if err := issuer.Provision(ctx); err != nil {
			return nil, fmt.Errorf("internal issuer: %v", err)
		}
		policy := &caddytls.AutomationPolicy{SubjectsRaw: internal, Issuers: []certmagic.Issuer{issuer}}
		if err := lt.app.AddAutomationPolicy(policy); err != nil {
			return nil, fmt.Errorf("adding automation policy for %v: %v", internal, err)
		}
	}

	lt.policies = caddytls.ConnectionPolicies{{ALPN: []string{alpn}, DefaultSNI: names[0]}}
	if err := lt.policies.Provision(ctx); err != nil {
		return nil, fmt.Errorf("connection policy: %v", err)
	}
	return lt, nil
}

// hasPolicyFor reports whether an automation policy names subject
// explicitly. Like Caddy's automatic HTTPS, a listener adds no second
// policy for such a name: the tls app refuses two policies for one name.
func (lt *listenerTLS) hasPolicyFor(subject string) bool {
	if lt.app.Automation == nil {
		return false
	}
	for _, ap := range lt.app.Automation.Policies {
		for _, s := range ap.Subjects() {
			if s == subject {
				return true
			}
		}
	}
	return false
}

// start has the tls app manage the certificates and returns the server
// config.
func (lt *listenerTLS) start(ctx caddy.Context) (*tls.Config, error) {
	if err := lt.app.Manage(lt.names); err != nil {
		return nil, err
	}
	return lt.policies.TLSConfig(ctx), nil
}
