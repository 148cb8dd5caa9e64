// Package e2e boots the real Berth image in qemu and checks it the way a
// user would: over the serial console and over SSH. The tests are behind
// the e2e build tag (`make e2e`); they skip, saying why, when qemu or the
// image is missing.
package e2e
