package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/sysinit"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// loadConfig is the merged config under --root.
func loadConfig(g *globalFlags) (*cloudinit.Config, error) {
	cfg, _, err := cloudinit.Load(g.root)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return cfg, nil
}

// systemSocket is System Docker's socket from rancher.system_docker.
func systemSocket(g *globalFlags, cfg *cloudinit.Config) string {
	for _, h := range cfg.Rancher.SystemDocker.Host {
		if p, ok := strings.CutPrefix(h, "unix://"); ok {
			return g.path(p)
		}
	}
	return g.path("/var/run/system-docker.sock")
}

func systemClient(g *globalFlags, cfg *cloudinit.Config) (*client.Client, error) {
	return sysinit.NewClient(systemSocket(g, cfg))
}

func newServiceCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "List, enable, disable, start and follow the system services",
	}
	cmd.AddCommand(newServiceListCmd(g), newServiceEnableCmd(g, true), newServiceEnableCmd(g, false),
		newServiceUpCmd(g), newServiceLogsCmd(g))
	return cmd
}

func newServiceListCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Every service: engine, enabled, state, restarts, last exit; then those rancher.repositories list",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			rows := serviceRows(cmd.Context(), g, cfg)
			rows = append(rows, repositoryRows(cmd, cfg, rows)...)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tENGINE\tENABLED\tSTATE\tRESTARTS\tLAST EXIT")
			for _, r := range rows {
				exit := "-"
				if r.LastExit != nil {
					exit = strconv.Itoa(*r.LastExit)
				}
				fmt.Fprintf(w, "%s\t%s\t%t\t%s\t%d\t%s\n", r.Name, r.Engine, r.Enabled, r.State, r.Restarts, exit)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// serviceRow is one line of `ros service list`.
type serviceRow struct {
	Name     string `json:"name"`
	Engine   string `json:"engine"`
	Enabled  bool   `json:"enabled"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	LastExit *int   `json:"last_exit,omitempty"`
	Error    string `json:"error,omitempty"`
	// Repository is the rancher.repositories entry whose index lists a
	// service not fetched yet.
	Repository string `json:"repository,omitempty"`
}

// repositoryIndexLimit bounds how long ros service list waits for the
// repositories' indexes.
const repositoryIndexLimit = 10 * time.Second

// repositoryRows are the services the indexes of rancher.repositories
// list that rows does not have (not fetched yet), as RancherOS's ros
// service list showed them, with state "in repository NAME". An index
// that cannot be fetched is said on stderr, and listing goes on.
func repositoryRows(cmd *cobra.Command, cfg *cloudinit.Config, rows []serviceRow) []serviceRow {
	if len(cfg.Rancher.Repositories) == 0 {
		return nil
	}
	proxy, err := cfg.Rancher.Network.Proxy()
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "ros service list: %v; fetching direct\n", err)
	}
	have := map[string]bool{}
	for _, r := range rows {
		have[r.Name] = true
	}
	list, errs := sysinit.RepositoryIndex(cmd.Context(), cfg.Rancher.Repositories, proxy, repositoryIndexLimit)
	for _, err := range errs {
		fmt.Fprintf(cmd.ErrOrStderr(), "ros service list: %v\n", err)
	}
	var out []serviceRow
	for _, s := range list {
		if !have[s.Name] {
			out = append(out, serviceRow{Name: s.Name, Engine: "-", Enabled: cfg.Rancher.ServicesInclude[s.Name],
				State: "in repository " + s.Repository, Repository: s.Repository})
		}
	}
	return out
}

func serviceRows(ctx context.Context, g *globalFlags, cfg *cloudinit.Config) []serviceRow {
	enabled := map[string]sysinit.Spec{}
	for _, s := range sysinit.Specs(cfg) {
		enabled[s.Name] = s
	}
	status := map[string]sysinit.ServiceStatus{}
	for _, f := range []string{"/run/berth/services.json", "/run/berth/user-services.json"} {
		var list []sysinit.ServiceStatus
		if b, err := os.ReadFile(g.path(f)); err == nil && json.Unmarshal(b, &list) == nil {
			for _, s := range list {
				status[s.Name] = s
			}
		}
	}
	states := map[string]string{}
	exits := map[string]int{}
	if cli, err := systemClient(g, cfg); err == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		l, err := cli.ContainerList(cctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", sysinit.LabelService)})
		cancel()
		if err == nil {
			for _, c := range l.Items {
				n := c.Labels[sysinit.LabelService]
				states[n] = string(c.State)
				// "Exited (3) 2 minutes ago"
				if rest, ok := strings.CutPrefix(c.Status, "Exited ("); ok {
					if code, _, ok := strings.Cut(rest, ")"); ok {
						if v, err := strconv.Atoi(code); err == nil {
							exits[n] = v
						}
					}
				}
			}
		}
		cli.Close()
	}
	var rows []serviceRow
	for name, svc := range cfg.Rancher.Services {
		if svc == nil {
			continue
		}
		sp, on := enabled[name]
		r := serviceRow{Name: name, Engine: "system-docker", Enabled: on, State: "-"}
		if on && sp.Scope == sysinit.ScopeUser || !on && svc.Labels[cloudinit.LabelScope] == sysinit.ScopeUser {
			r.Engine = "docker"
		}
		if st, ok := states[name]; ok {
			r.State = st
		} else if on && r.Engine == "system-docker" {
			r.State = "missing"
		}
		if v, ok := exits[name]; ok {
			r.LastExit = &v
		}
		if st, ok := status[name]; ok {
			r.Restarts, r.Error = st.Restarts, st.Error
			if st.LastExit != nil {
				r.LastExit = st.LastExit
			}
			if r.Engine == "docker" && r.State == "-" && st.ContainerID != "" {
				r.State = "created"
			}
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows
}

func newServiceEnableCmd(g *globalFlags, enable bool) *cobra.Command {
	use, short := "enable NAME", "Enable a service in the local config (rancher.services_include.NAME=true)"
	if !enable {
		use, short = "disable NAME", "Disable a service in the local config (rancher.services_include.NAME=false)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			_, defined := cfg.Rancher.Services[name]
			inRepos := len(cloudinit.RepositoryURLs(cfg.Rancher.Repositories, name)) > 0
			switch {
			case (cloudinit.IsServicesURL(name) || !defined && inRepos) && enable:
				// Fetched now, so that `ros service up` and the next boot
				// have its services even before PID 1 fetches it again.
				if err := fetchInclude(cmd, g, cfg, name); err != nil {
					return err
				}
			case cloudinit.IsServicesURL(name):
			case !defined && (enable || !inRepos):
				return &exitError{code: 2, err: fmt.Errorf("no service named %q (see ros service list; rancher.repositories sets none to look it up in)", name)}
			}
			err = editLocal(g, func(doc *yaml.Node) error {
				return setServiceInclude(doc, name, enable)
			})
			if err != nil {
				return err
			}
			verb := "enabled"
			if !enable {
				verb = "disabled"
			}
			if cloudinit.IsServicesURL(name) {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s; its services change at the next boot or with `ros service up`\n", name, verb)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s; it takes effect at the next boot or with `ros service up %s`\n", name, verb, name)
			return nil
		},
	}
}

// fetchInclude fetches the services file of a services_include key (a
// URL, or a name looked up in rancher.repositories) into the kept copies
// (rancher.network's proxies apply) and says what it defines.
func fetchInclude(cmd *cobra.Command, g *globalFlags, cfg *cloudinit.Config, key string) error {
	proxy, err := cfg.Rancher.Network.Proxy()
	if err != nil {
		return fmt.Errorf("service enable: %w", err)
	}
	one := &cloudinit.Config{}
	one.Rancher.ServicesInclude = map[string]bool{key: true}
	one.Rancher.Repositories = cfg.Rancher.Repositories
	r := sysinit.FetchServicesFiles(cmd.Context(), one, g.root, proxy, 30*time.Second)[0]
	if r.Err != nil {
		return &exitError{code: 1, err: r.Err}
	}
	if r.URL == key {
		fmt.Fprintf(cmd.OutOrStdout(), "fetched %s: %d services\n", key, r.Services)
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "fetched %s from %s: %d services\n", key, r.URL, r.Services)
	}
	return nil
}

// setServiceInclude sets rancher.services_include.NAME in a config
// document; NAME may contain dots and dashes, so the mapping is edited
// directly rather than through a dotted key.
func setServiceInclude(doc *yaml.Node, name string, on bool) error {
	m := doc
	if m.Kind == yaml.DocumentNode {
		if len(m.Content) == 0 {
			m.Content = []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}
		}
		m = m.Content[0]
	}
	if m.Kind == 0 {
		m.Kind, m.Tag = yaml.MappingNode, "!!map"
	}
	if m.Kind != yaml.MappingNode {
		return errors.New("local config is not a mapping")
	}
	for _, key := range []string{"rancher", "services_include"} {
		m = child(m, key)
	}
	v := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(on)}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == name {
			m.Content[i+1] = v
			return nil
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}, v)
	return nil
}

// child returns the mapping under key in m, making it when missing.
func child(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i+1].Kind == yaml.MappingNode {
			return m.Content[i+1]
		}
		if m.Content[i].Value == key {
			n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			m.Content[i+1] = n
			return n
		}
	}
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, n)
	return n
}

func newServiceUpCmd(g *globalFlags) *cobra.Command {
	imgVersion := version
	cmd := &cobra.Command{
		Use:   "up [NAME...]",
		Short: "Create (or recreate, if its definition changed) and start services on System Docker",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			cli, err := systemClient(g, cfg)
			if err != nil {
				return err
			}
			defer cli.Close()
			var specs []sysinit.Spec
			for _, s := range sysinit.ResolveImages(sysinit.Specs(cfg), imgVersion) {
				if s.Scope == sysinit.ScopeSystem {
					specs = append(specs, s)
				}
			}
			res, err := sysinit.NewServices("system-docker", cli).Up(cmd.Context(), specs, args...)
			out := cmd.OutOrStdout()
			// PID 1 supervises what it knows of: have it read the config
			// again, so that what was just brought up is kept up.
			if g.root == "/" && berthIsPID1() {
				if kerr := syscall.Kill(1, syscall.SIGHUP); kerr != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "ros service up: asking PID 1 to reload: %v\n", kerr)
				}
			}
			for _, l := range []struct {
				verb  string
				names []string
			}{{"created", res.Created}, {"recreated", res.Recreated}, {"started", res.Started}, {"unchanged", res.Unchanged}} {
				if len(l.names) > 0 {
					fmt.Fprintf(out, "%s: %s\n", l.verb, strings.Join(l.names, " "))
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&imgVersion, "version", imgVersion, "the Berth version whose images ${VERSION} names")
	return cmd
}

// berthIsPID1 says whether PID 1 is this binary (Berth's init), as
// opposed to a development machine running `ros` against its own docker.
func berthIsPID1() bool {
	exe, err := os.Readlink("/proc/1/exe")
	if err != nil {
		return false
	}
	// After the switch to the tmpfs root the initramfs copy PID 1 was
	// started from is gone: "/init (deleted)".
	name := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	if name != "ros" && name != "init" {
		return false
	}
	// /run/berth is Berth's PID 1's own (a distribution's init is also
	// called init).
	_, err = os.Stat("/run/berth")
	return err == nil
}

func newServiceLogsCmd(g *globalFlags) *cobra.Command {
	var follow bool
	var tail string
	cmd := &cobra.Command{
		Use:   "logs [-f] NAME",
		Short: "Print a system service's output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			cli, err := systemClient(g, cfg)
			if err != nil {
				return err
			}
			defer cli.Close()
			name := args[0]
			if s, ok := cfg.Rancher.Services[name]; ok && s != nil && s.ContainerName != "" {
				name = s.ContainerName
			}
			ctx := cmd.Context()
			in, err := cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
			if err != nil {
				return fmt.Errorf("service %s: %w", args[0], err)
			}
			r, err := cli.ContainerLogs(ctx, name, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: follow, Tail: tail})
			if err != nil {
				return fmt.Errorf("logs of %s: %w", args[0], err)
			}
			defer r.Close()
			if in.Container.Config != nil && in.Container.Config.Tty {
				_, err = io.Copy(cmd.OutOrStdout(), r)
			} else {
				_, err = stdcopy.StdCopy(cmd.OutOrStdout(), cmd.ErrOrStderr(), r)
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	cmd.Flags().StringVar(&tail, "tail", "all", "number of lines from the end to show")
	return cmd
}

func newEngineCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "engine", Short: "The Docker engines Berth ships"}
	cmd.AddCommand(newEngineRunCmd(g))
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the engine versions shipped (System Docker and User Docker run the same one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := "unknown"
			if out, err := exec.CommandContext(cmd.Context(), "dockerd", "--version").Output(); err == nil {
				v = strings.TrimSpace(string(out))
			}
			api := ""
			if cfg, err := loadConfig(g); err == nil {
				if cli, err := systemClient(g, cfg); err == nil {
					ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
					if sv, err := cli.ServerVersion(ctx, client.ServerVersionOptions{}); err == nil {
						api = " API " + sv.APIVersion
					}
					cancel()
					cli.Close()
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "current  docker  %s%s\n", v, api)
			return nil
		},
	})
	return cmd
}

func newConsoleCmd(*globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "console", Short: "The console (shell and SSH) service"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the consoles shipped",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "current  default  (busybox + dropbear SSH, key-only login for rancher)")
		},
	})
	return cmd
}

func newTLSCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "tls", Short: "Certificates for User Docker's TLS (rancher.docker.tls)"}
	var server bool
	var hosts []string
	var dir string
	gen := &cobra.Command{
		Use:   "gen",
		Short: "Make the CA and a server (-s) or client certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			caDir := g.path(sysinit.TLSDir)
			out := dir
			if out == "" {
				if server {
					out = caDir
				} else {
					home, err := os.UserHomeDir()
					if err != nil {
						return fmt.Errorf("tls gen: %w", err)
					}
					out = filepath.Join(home, ".docker")
				}
			}
			files, err := sysinit.GenerateTLS(caDir, out, server, hosts, time.Now())
			if err != nil {
				return err
			}
			if server && dir == "" {
				// Kept on the state disk, so that User Docker serves this
				// certificate again after a reboot (PID 1 copies it back).
				if err := sysinit.CopyServerTLS(caDir, g.path(sysinit.TLSStore)); err != nil {
					return fmt.Errorf("tls gen: %w", err)
				}
			}
			for _, f := range files {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			return nil
		},
	}
	gen.Flags().BoolVarP(&server, "server", "s", false, "make the server certificate (for dockerd) instead of a client one")
	gen.Flags().StringSliceVarP(&hosts, "hostname", "H", nil, "names and addresses the server certificate is valid for (repeatable)")
	gen.Flags().StringVarP(&dir, "dir", "d", "", "write here (default /etc/docker/tls with -s, else ~/.docker)")
	cmd.AddCommand(gen)
	return cmd
}

// newSystemDockerCmd is `ros system-docker ARGS` and argv0 `system-docker`:
// the docker CLI pointed at System Docker's socket.
func newSystemDockerCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:                "system-docker [DOCKER ARGS...]",
		Short:              "Run the docker CLI against System Docker",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Flag parsing is off (every flag is docker's), so take a
			// leading --root here.
			if len(args) > 1 && args[0] == "--root" {
				g.root, args = args[1], args[2:]
			} else if len(args) > 0 && strings.HasPrefix(args[0], "--root=") {
				g.root, args = strings.TrimPrefix(args[0], "--root="), args[1:]
			}
			sock := g.path("/var/run/system-docker.sock")
			if cfg, err := loadConfig(g); err == nil {
				sock = systemSocket(g, cfg)
			}
			docker, err := exec.LookPath("docker")
			if err != nil {
				return fmt.Errorf("system-docker: the docker CLI: %w", err)
			}
			env := append(os.Environ(), "DOCKER_HOST=unix://"+sock)
			err = syscall.Exec(docker, append([]string{"docker"}, args...), env)
			return fmt.Errorf("system-docker: exec %s: %w", docker, err)
		},
	}
}

// newRespawnCmd is argv0 `respawn`: keep the commands of a respawn.conf
// running.
func newRespawnCmd(*globalFlags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:    "respawn",
		Short:  "Keep the commands of a respawn.conf (one shell line each) running",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := os.Open(file)
			if err != nil {
				return fmt.Errorf("respawn: %w", err)
			}
			lines, err := sysinit.RespawnLines(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("respawn: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			sysinit.Respawn(ctx, lines, 10*time.Second, slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "/etc/respawn.conf", "the commands, one per line")
	return cmd
}

// newEngineRunCmd is `ros engine run`: what PID 1's boot does with the
// engines, in the foreground, for debugging and benchmarks: start System
// Docker and the services of the merged config, supervise them, and shut
// them down on SIGTERM or SIGINT.
func newEngineRunCmd(g *globalFlags) *cobra.Command {
	var images, imgVersion string
	cmd := &cobra.Command{
		Use:    "run",
		Short:  "Start System Docker and the services in the foreground; stop them on SIGTERM",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			t0 := time.Now()
			eng, err := sysinit.StartEngines(ctx, cfg, sysinit.WithRoot(g.root), sysinit.WithImageDir(images),
				sysinit.WithVersion(imgVersion), sysinit.WithLogger(log))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "engines up in %s; %d services started\n", time.Since(t0).Round(time.Millisecond), len(eng.Started.Started))
			if eng.StartErr != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), eng.StartErr)
			}
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			return eng.Shutdown(sctx)
		},
	}
	cmd.Flags().StringVar(&images, "images", sysinit.DefaultImageDir, "the OS's images: an image store in its store directory, or docker-save tarballs")
	cmd.Flags().StringVar(&imgVersion, "version", version, "the Berth version (image tag, load stamp)")
	return cmd
}
