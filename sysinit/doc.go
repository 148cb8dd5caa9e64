// Package sysinit is PID 1's side of the machine: the boot phases, reaping
// and power signals (pid1*.go), and the engines: System Docker as a
// supervised child process, the OS's images loaded without a registry,
// the system services reconciled from the config in dependency order and
// restarted with backoff, and User Docker as one of those services.
package sysinit
