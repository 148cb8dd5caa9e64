package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/internal/atomicfile"
	"github.com/berthos/berth/sysinit"
)

// newConfigCmd is `ros config`: read, change and validate the cloud-config.
func newConfigCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Read, change and validate the cloud-config",
	}
	cmd.AddCommand(
		newConfigGetCmd(g),
		newConfigSetCmd(g),
		newConfigMergeCmd(g),
		newConfigExportCmd(g),
		newConfigValidateCmd(g),
	)
	return cmd
}

func newConfigGetCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key of the merged config (a scalar plainly, a map or list as YAML)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tree, rep, err := cloudinit.LoadTree(g.root)
			if err != nil {
				return err
			}
			printErrors(cmd.ErrOrStderr(), rep)
			n, ok := cloudinit.Get(tree, args[0])
			if !ok {
				if !cloudinit.KnownKey(args[0]) {
					return fmt.Errorf("config get %s: %w", args[0], cloudinit.ErrUnknownKey)
				}
				return nil // known but unset: an empty answer
			}
			return printNode(cmd.OutOrStdout(), n)
		},
	}
}

func printNode(w io.Writer, n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!null" {
			return nil
		}
		_, err := fmt.Fprintln(w, n.Value)
		return err
	}
	blockStyle(n)
	out, err := cloudinit.Encode(n)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// blockStyle drops flow style (`[a, b]`), so every answer reads the same
// whichever file the value came from.
func blockStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// printErrors shows a report's errors (not its warnings) on stderr.
func printErrors(w io.Writer, rep *cloudinit.Report) {
	for _, e := range rep.Errors() {
		fmt.Fprintln(w, "config:", e)
	}
}

func newConfigSetCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Set a key in the local config (typed like the kernel command line)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return editLocal(g, func(doc *yaml.Node) error {
				if err := cloudinit.Set(doc, args[0], args[1]); err != nil {
					return fmt.Errorf("config set: %w", err)
				}
				return nil
			})
		},
	}
}

// editLocal reads the local cloud-config.yml, lets edit change it, checks
// the result and writes it back atomically.
func editLocal(g *globalFlags, edit func(doc *yaml.Node) error) error {
	p := g.path(cloudinit.LocalConfigPath)
	data, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read local config: %w", err)
	}
	doc, err := cloudinit.ReadDocument(cloudinit.LocalConfigPath, data)
	if err != nil {
		return err
	}
	if err := edit(doc); err != nil {
		return err
	}
	out, err := cloudinit.Encode(doc)
	if err != nil {
		return err
	}
	return atomicfile.Write(p, out, 0o600)
}

// readInput reads FILE, or stdin for "-".
func readInput(cmd *cobra.Command, name string) ([]byte, string, error) {
	if name == "-" {
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, "", fmt.Errorf("read stdin: %w", err)
		}
		return b, "stdin", nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, "", fmt.Errorf("read input: %w", err)
	}
	return b, name, nil
}

func newConfigMergeCmd(g *globalFlags) *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "merge -i FILE",
		Short: "Merge a cloud-config file into the local config (refused if it has errors)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, source, err := readInput(cmd, input)
			if err != nil {
				return err
			}
			src, rep, err := cloudinit.ParseTree(source, data)
			if err != nil {
				return fmt.Errorf("config merge: %w", err)
			}
			fmt.Fprint(cmd.ErrOrStderr(), rep)
			if rep.HasErrors() {
				return &exitError{code: 1, err: fmt.Errorf("config merge: %s has errors; nothing merged", source)}
			}
			return editLocal(g, func(doc *yaml.Node) error {
				return cloudinit.MergeInto(doc, src)
			})
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "cloud-config file to merge (- for stdin)")
	_ = cmd.MarkFlagRequired("input")
	return cmd
}

func newConfigExportCmd(g *globalFlags) *cobra.Command {
	var full, private bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Print the local config, or the whole merged config with --full",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var tree *yaml.Node
			if full {
				t, rep, err := cloudinit.LoadTree(g.root)
				if err != nil {
					return err
				}
				printErrors(cmd.ErrOrStderr(), rep)
				cloudinit.StripComments(t)
				tree = t
			} else {
				data, err := os.ReadFile(g.path(cloudinit.LocalConfigPath))
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("read local config: %w", err)
				}
				doc, err := cloudinit.ReadDocument(cloudinit.LocalConfigPath, data)
				if err != nil {
					return err
				}
				tree = doc.Content[0]
			}
			if !private {
				cloudinit.StripSecrets(tree)
			}
			if len(tree.Content) == 0 {
				return nil
			}
			out, err := cloudinit.Encode(tree)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().BoolVar(&full, "full", false, "the merged config of every source, defaults included")
	cmd.Flags().BoolVar(&private, "private", false, "include SSH keys, passwords, TLS keys and registry credentials")
	return cmd
}

func newConfigValidateCmd(g *globalFlags) *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "validate -i FILE",
		Short: "Check a cloud-config file: print each problem; exit 1 on errors, 0 with warnings only",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, source, err := readInput(cmd, input)
			if err != nil {
				return err
			}
			if userDataContainer(data) {
				// gzip, MIME multipart or a script, as a cloud would get it.
				ud, err := cloudinit.DecodeUserData(data)
				if err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %v\n", source, err)
					return &exitError{code: 1, err: errors.New("config validate: not valid user-data")}
				}
				for _, s := range ud.Scripts {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: script %s (%d bytes) is run as it is; not checked\n", source, s.Name, len(s.Body))
				}
				if ud.CloudConfig == nil {
					return nil
				}
				data, source = ud.CloudConfig, source+" (cloud-config)"
			}
			tree, rep, err := cloudinit.ParseTree(source, data)
			if err != nil {
				fmt.Fprintln(cmd.OutOrStdout(), err)
				return &exitError{code: 1, err: errors.New("config validate: not a valid cloud-config")}
			}
			rep.Entries = append(rep.Entries, unplacedFiles(source, tree)...)
			rep.Entries = append(rep.Entries, unknownIncludes(source, tree)...)
			rep.Entries = append(rep.Entries, inlineTLS(source, tree, time.Now())...)
			fmt.Fprint(cmd.OutOrStdout(), rep)
			if rep.HasErrors() {
				return &exitError{code: 1, err: fmt.Errorf("config validate: %d errors", len(rep.Errors()))}
			}
			return nil
		},
	}
	_ = g
	cmd.Flags().StringVarP(&input, "input", "i", "", "cloud-config file to check (- for stdin)")
	_ = cmd.MarkFlagRequired("input")
	return cmd
}

// unknownIncludes warns of the rancher.services_include names of tree
// (a checked document) that name no service of tree or the built-in
// defaults when tree sets no rancher.repositories to look them up in
// (RancherOS's kernel-headers came from its own): nothing is included
// for them.
func unknownIncludes(source string, tree *yaml.Node) []cloudinit.Entry {
	inc, ok := cloudinit.Get(tree, "rancher.services_include")
	if !ok || inc.Kind != yaml.MappingNode {
		return nil
	}
	merged, _ := cloudinit.DefaultsTree()
	if err := cloudinit.MergeInto(merged, tree); err != nil {
		return nil
	}
	cfg := cloudinit.Decode(merged)
	if len(cfg.Rancher.Repositories) > 0 {
		return nil // the boot looks them up there
	}
	unknown := map[string]bool{}
	for _, n := range sysinit.UnknownIncludes(cfg) {
		unknown[n] = true
	}
	var out []cloudinit.Entry
	for i := 0; i+1 < len(inc.Content); i += 2 {
		k := inc.Content[i]
		if !unknown[k.Value] {
			continue
		}
		out = append(out, cloudinit.Entry{
			Source: source, Line: k.Line, Column: k.Column,
			Path:    "rancher.services_include." + k.Value,
			Message: fmt.Sprintf("no service is named %q here or in the built-in ones, and no rancher.repositories is set to look it up in: nothing is included (set a repository, or give a services file's URL)", k.Value),
		})
	}
	return out
}

// unplacedFiles warns of the write_files entries of tree (a checked
// document) whose `container:` names no service that tree, over the
// built-in defaults, enables: a typo or a disabled service, whose file
// the boot would write nowhere (sysinit.UnplacedFiles, which PID 1 warns
// of too).
func unplacedFiles(source string, tree *yaml.Node) []cloudinit.Entry {
	list, ok := cloudinit.Get(tree, "write_files")
	if !ok || list.Kind != yaml.SequenceNode {
		return nil
	}
	merged, _ := cloudinit.DefaultsTree()
	if err := cloudinit.MergeInto(merged, tree); err != nil {
		return nil
	}
	cfg := cloudinit.Decode(merged)
	unplaced := map[string]bool{}
	for _, f := range sysinit.UnplacedFiles(cfg) {
		unplaced[f.Container] = true
	}
	var out []cloudinit.Entry
	for i, item := range list.Content {
		n, ok := cloudinit.Get(item, "container")
		if !ok || n.Kind != yaml.ScalarNode || !unplaced[n.Value] {
			continue
		}
		out = append(out, cloudinit.Entry{
			Source: source, Line: n.Line, Column: n.Column,
			Path:    fmt.Sprintf("write_files[%d].container", i),
			Message: fmt.Sprintf("no enabled service is named %q: the file would be written nowhere", n.Value),
		})
	}
	return out
}

// inlineTLS warns when tree's inline User Docker certificates
// (rancher.docker.ca_cert, ca_key, server_cert, server_key) do not fit
// together: the boot would log the same and give User Docker the
// machine's own certificates instead (sysinit.CheckConfigTLS).
func inlineTLS(source string, tree *yaml.Node, now time.Time) []cloudinit.Entry {
	key, err := sysinit.CheckConfigTLS(cloudinit.Decode(tree).Rancher.Docker, now)
	if err == nil || errors.Is(err, sysinit.ErrNoConfigTLS) {
		return nil
	}
	e := cloudinit.Entry{Source: source, Path: key, Message: strings.TrimPrefix(err.Error(), key+": ")}
	if n, ok := cloudinit.Get(tree, key); ok {
		e.Line, e.Column = n.Line, n.Column
	}
	return []cloudinit.Entry{e}
}

// userDataContainer reports whether data is user-data other than a plain
// cloud-config: gzip, MIME multipart or a `#!` script.
func userDataContainer(data []byte) bool {
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		return true
	}
	head := strings.ToLower(string(bytes.TrimLeft(data[:min(len(data), 64)], " \t\r\n")))
	return strings.HasPrefix(head, "#!") || strings.HasPrefix(head, "content-type:") || strings.HasPrefix(head, "mime-version:")
}
