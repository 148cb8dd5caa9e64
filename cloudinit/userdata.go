package cloudinit

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxUserData bounds user-data after decompression.
const maxUserData = 16 << 20

// ErrUserDataFormat marks user-data of a kind Berth does not understand.
var ErrUserDataFormat = errors.New("unsupported user-data format")

// DecodeUserData classifies raw user-data: #cloud-config, #! script, gzip,
// MIME multipart (text/cloud-config and text/x-shellscript parts; several
// cloud-config parts are merged in order), or empty (nothing to do: an
// empty UserData, no error). Anything else, including a cloud-config that
// is not valid YAML, is an error and nothing of it is used.
func DecodeUserData(data []byte) (*UserData, error) {
	ud := &UserData{}
	var trees []*ccPart
	if err := classify(data, "user-data", ud, &trees, 0); err != nil {
		return nil, fmt.Errorf("decode user-data: %w", err)
	}
	switch len(trees) {
	case 0:
	case 1:
		ud.CloudConfig = trees[0].raw
	default:
		merged := trees[0].node
		for _, t := range trees[1:] {
			merged = mergeTree(merged, t.node)
		}
		out, err := yaml.Marshal(merged)
		if err != nil {
			return nil, fmt.Errorf("decode user-data: merge cloud-config parts: %w", err)
		}
		ud.CloudConfig = append([]byte("#cloud-config\n"), out...)
	}
	return ud, nil
}

// ccPart is one cloud-config part: its text and its parsed tree.
type ccPart struct {
	raw  []byte
	node *yaml.Node
}

// classify sorts one piece of user-data into ud and trees.
func classify(data []byte, name string, ud *UserData, trees *[]*ccPart, depth int) error {
	if depth > 4 {
		return fmt.Errorf("%s: %w: nested too deeply", name, ErrUserDataFormat)
	}
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%s: gunzip: %w", name, err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, maxUserData+1))
		if err != nil {
			return fmt.Errorf("%s: gunzip: %w", name, err)
		}
		if len(out) > maxUserData {
			return fmt.Errorf("%s: gunzip: more than %d bytes", name, maxUserData)
		}
		return classify(out, name, ud, trees, depth+1)
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return nil
	case bytes.HasPrefix(trimmed, []byte("#cloud-config")):
		n, _, err := parseTree(name, data)
		if err != nil {
			return err
		}
		*trees = append(*trees, &ccPart{data, n})
		return nil
	case bytes.HasPrefix(trimmed, []byte("#!")):
		ud.Scripts = append(ud.Scripts, Script{Name: name, Body: data})
		return nil
	case isMIME(trimmed):
		return classifyMIME(trimmed, ud, trees, depth)
	}
	first, _, _ := bytes.Cut(trimmed, []byte("\n"))
	if len(first) > 40 {
		first = append(first[:40:40], "..."...)
	}
	return fmt.Errorf("%s: %w: starts with %q (want #cloud-config, #!, gzip or MIME multipart)", name, ErrUserDataFormat, first)
}

func isMIME(data []byte) bool {
	head := strings.ToLower(string(data[:min(len(data), 64)]))
	return strings.HasPrefix(head, "content-type:") || strings.HasPrefix(head, "mime-version:")
}

func classifyMIME(data []byte, ud *UserData, trees *[]*ccPart, depth int) error {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("read MIME message: %w", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("MIME Content-Type: %w", err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		body, err := readPart(msg.Body, msg.Header.Get("Content-Transfer-Encoding"))
		if err != nil {
			return err
		}
		return classifyTyped(mt, body, "user-data", ud, trees, depth)
	}
	if params["boundary"] == "" {
		return fmt.Errorf("MIME %s: no boundary", mt)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for i := 1; ; i++ {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("MIME part %d: %w", i, err)
		}
		name := part.FileName()
		if name == "" {
			name = fmt.Sprintf("part-%03d", i)
		}
		pmt := "text/plain"
		if ct := part.Header.Get("Content-Type"); ct != "" {
			if pmt, _, err = mime.ParseMediaType(ct); err != nil {
				return fmt.Errorf("MIME part %s: Content-Type: %w", name, err)
			}
		}
		body, err := readPart(part, part.Header.Get("Content-Transfer-Encoding"))
		if err != nil {
			return fmt.Errorf("MIME part %s: %w", name, err)
		}
		if err := classifyTyped(pmt, body, name, ud, trees, depth); err != nil {
			return err
		}
	}
}

func readPart(r io.Reader, cte string) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &newlineSkipper{r: r})
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxUserData+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(b) > maxUserData {
		return nil, fmt.Errorf("read body: more than %d bytes", maxUserData)
	}
	return b, nil
}

// classifyTyped sorts a MIME body by its declared type.
func classifyTyped(mt string, body []byte, name string, ud *UserData, trees *[]*ccPart, depth int) error {
	switch mt {
	case "text/cloud-config":
		n, _, err := parseTree(name, body)
		if err != nil {
			return err
		}
		*trees = append(*trees, &ccPart{body, n})
		return nil
	case "text/x-shellscript":
		ud.Scripts = append(ud.Scripts, Script{Name: name, Body: body})
		return nil
	case "text/plain", "application/gzip", "application/x-gzip":
		return classify(body, name, ud, trees, depth+1)
	}
	return fmt.Errorf("MIME part %s: %w: content type %s (want text/cloud-config or text/x-shellscript)", name, ErrUserDataFormat, mt)
}

// newlineSkipper drops CR and LF so base64 bodies with line breaks decode.
type newlineSkipper struct{ r io.Reader }

func (s *newlineSkipper) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c != '\r' && c != '\n' {
			p[j] = c
			j++
		}
	}
	return j, err
}

// Substitute replaces $public_ipv4, $private_ipv4, $public_ipv6 and
// $private_ipv6 in user-data with the metadata's addresses (an empty
// string when the metadata has none).
func Substitute(data []byte, m *Metadata) []byte {
	if m == nil || !bytes.Contains(data, []byte("$p")) {
		return data
	}
	r := strings.NewReplacer(
		"$public_ipv4", m.PublicIPv4,
		"$private_ipv4", m.PrivateIPv4,
		"$public_ipv6", m.PublicIPv6,
		"$private_ipv6", m.PrivateIPv6,
	)
	return []byte(r.Replace(string(data)))
}
