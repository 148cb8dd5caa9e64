package fake

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EC2 is a fake EC2 instance metadata service: IMDSv2 tokens (PUT
// /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds), optional
// IMDSv1, /latest/meta-data/... and /latest/user-data.
type EC2 struct {
	faulter
	// UserData is served at /latest/user-data; nil answers 404.
	UserData []byte
	// Meta maps paths under /latest/meta-data/ to values.
	Meta map[string]string
	// RequireToken refuses token-less (IMDSv1) requests with 401.
	RequireToken bool
	// NoTokens answers the token PUT with 404, as an IMDSv1-only service.
	NoTokens bool
	// TokenUses makes each token expire after this many uses (0: only
	// the TTL counts), to test expiry in the middle of a fetch.
	TokenUses int

	mu     sync.Mutex
	tokens map[string]*token
}

type token struct {
	expires time.Time
	uses    int
}

// EC2Meta is the metadata of the default fake EC2 instance (documentation
// addresses only).
func EC2Meta() map[string]string {
	mac := "02:00:00:00:00:01"
	p := "network/interfaces/macs/" + mac + "/"
	return map[string]string{
		"instance-id":                 "i-0123456789abcdef0",
		"hostname":                    "ip-192-0-2-10.ec2.internal",
		"local-hostname":              "ip-192-0-2-10.ec2.internal",
		"local-ipv4":                  "192.0.2.10",
		"public-ipv4":                 "203.0.113.10",
		"ipv6":                        "2001:db8::10",
		"placement/availability-zone": "us-east-1a",
		"placement/region":            "us-east-1",
		"public-keys/0=berth-test":    "",
		"public-keys/0/openssh-key":   "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthTestKeyOnlyForFixtures berth-test",
		p + "device-number":           "0",
		p + "local-ipv4s":             "192.0.2.10",
		p + "subnet-ipv4-cidr-block":  "192.0.2.0/24",
		p + "ipv6s":                   "2001:db8::10",
		p + "subnet-ipv6-cidr-blocks": "2001:db8::/64",
		p + "mac":                     mac,
		p + "public-ipv4s":            "203.0.113.10",
	}
}

// ServeHTTP answers like IMDS.
func (e *EC2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !e.before(w, r) {
		return
	}
	if r.URL.Path == "/latest/api/token" {
		e.issue(w, r)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if tok := r.Header.Get("X-aws-ec2-metadata-token"); tok != "" {
		if !e.valid(tok) {
			http.Error(w, "token expired or invalid", http.StatusUnauthorized)
			return
		}
	} else if e.RequireToken {
		http.Error(w, "IMDSv2 token required", http.StatusUnauthorized)
		return
	}
	switch {
	case r.URL.Path == "/latest/user-data" || r.URL.Path == "/latest/user-data/":
		if e.UserData == nil {
			http.NotFound(w, r)
			return
		}
		e.write(w, r, e.UserData)
	case strings.HasPrefix(r.URL.Path, "/latest/meta-data/"):
		p := strings.TrimPrefix(r.URL.Path, "/latest/meta-data/")
		t := tree{}
		for k, v := range e.Meta {
			if k != "" && !strings.HasSuffix(k, "/") {
				t[k] = v
			}
		}
		v, ok := t.lookup(p)
		if !ok {
			http.NotFound(w, r)
			return
		}
		e.write(w, r, []byte(v))
	default:
		http.NotFound(w, r)
	}
}

func (e *EC2) issue(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		http.Error(w, "token needs PUT", http.StatusMethodNotAllowed)
		return
	}
	if e.NoTokens {
		http.NotFound(w, r)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
	if err != nil || ttl < 1 || ttl > 21600 {
		http.Error(w, "bad X-aws-ec2-metadata-token-ttl-seconds", http.StatusBadRequest)
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	e.mu.Lock()
	if e.tokens == nil {
		e.tokens = map[string]*token{}
	}
	e.tokens[tok] = &token{expires: time.Now().Add(time.Duration(ttl) * time.Second)}
	e.mu.Unlock()
	w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(ttl))
	e.write(w, r, []byte(tok))
}

func (e *EC2) valid(tok string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tokens[tok]
	if !ok || time.Now().After(t.expires) {
		return false
	}
	t.uses++
	if e.TokenUses > 0 && t.uses > e.TokenUses {
		delete(e.tokens, tok)
		return false
	}
	return true
}

// TokensIssued reports how many tokens were handed out.
func (e *EC2) TokensIssued() int {
	return e.Hits("/latest/api/token")
}
