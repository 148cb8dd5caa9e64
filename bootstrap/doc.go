// Package bootstrap owns everything PID 1 does before the engines start:
// the early mount table (as data), the switch from the initramfs into a
// tmpfs root, kernel module loading (finit_module with modules.dep), the
// system squashfs, the state disk (find, format when blank, mount, bind
// the persistent paths), and the boot timeline.
package bootstrap
