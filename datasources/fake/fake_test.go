package fake

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func do(t *testing.T, method, url string, h map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestEC2Tokens(t *testing.T) {
	e := &EC2{UserData: []byte("ud"), Meta: EC2Meta(), RequireToken: true, TokenUses: 1}
	srv := httptest.NewServer(e)
	defer srv.Close()
	if code, _, _ := do(t, "PUT", srv.URL+"/latest/api/token", nil); code != http.StatusBadRequest {
		t.Errorf("token PUT without TTL = %d, want 400", code)
	}
	if code, _, _ := do(t, "GET", srv.URL+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"}); code != http.StatusMethodNotAllowed {
		t.Errorf("token GET = %d, want 405", code)
	}
	code, tok, h := do(t, "PUT", srv.URL+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
	if code != 200 || tok == "" || h.Get("X-aws-ec2-metadata-token-ttl-seconds") != "60" {
		t.Fatalf("token PUT = %d %q ttl %q", code, tok, h.Get("X-aws-ec2-metadata-token-ttl-seconds"))
	}
	if code, _, _ := do(t, "GET", srv.URL+"/latest/user-data", nil); code != http.StatusUnauthorized {
		t.Errorf("IMDSv1 GET with RequireToken = %d, want 401", code)
	}
	tk := map[string]string{"X-aws-ec2-metadata-token": tok}
	if code, body, _ := do(t, "GET", srv.URL+"/latest/user-data", tk); code != 200 || body != "ud" {
		t.Errorf("GET with token = %d %q", code, body)
	}
	if code, _, _ := do(t, "GET", srv.URL+"/latest/user-data", tk); code != http.StatusUnauthorized {
		t.Errorf("GET with a used-up token = %d, want 401", code)
	}
	if e.TokensIssued() != 3 {
		t.Errorf("TokensIssued = %d, want 3 requests to the token path", e.TokensIssued())
	}
}

func TestTreeListing(t *testing.T) {
	tr := tree{"a": "1", "b/c": "2", "b/d/e": "3"}
	tests := map[string]string{"": "a\nb/", "b": "c\nd/", "b/": "c\nd/", "b/c": "2", "b/d/e": "3"}
	for p, want := range tests {
		got, ok := tr.lookup(p)
		if !ok || got != want {
			t.Errorf("lookup(%q) = %q, %v, want %q", p, got, ok, want)
		}
	}
	if _, ok := tr.lookup("zz"); ok {
		t.Errorf("lookup(zz) found something")
	}
}
