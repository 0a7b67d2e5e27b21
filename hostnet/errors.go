package hostnet

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Sentinel errors, matched with errors.Is. Each is wrapped with what was
// being done and, where there is one, the errno the kernel returned.
var (
	// ErrPermission: the caller lacks CAP_NET_ADMIN in the network namespace.
	ErrPermission = errors.New("permission denied: CAP_NET_ADMIN is needed (run as root or with sudo)")
	// ErrNFTablesMissing: the kernel has no nf_tables (module not loaded or not built).
	ErrNFTablesMissing = errors.New("nf_tables is not available in this kernel (modprobe nf_tables nft_nat nft_fib_ipv4 nft_masq nft_ct)")
	// ErrConflict: a name or address we need is taken by something that is not ours.
	ErrConflict = errors.New("conflict with existing host configuration")
	// ErrTapBusy: the TAP is already attached to another process.
	ErrTapBusy = errors.New("TAP device is busy (already opened by another process)")
	// ErrInvalidConfig: the configuration itself is wrong.
	ErrInvalidConfig = errors.New("invalid network configuration")
)

// conflictf builds an ErrConflict with a one-line explanation.
func conflictf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConflict, fmt.Sprintf(format, args...))
}

// invalidf builds an ErrInvalidConfig with a one-line explanation.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// classify maps kernel errnos that have a well-known meaning here to our
// sentinels, keeping the errno in the chain: errors.Is works for both.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%s: %w (%w)", op, ErrPermission, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// classifyNFT is classify for the nftables netlink socket, where a missing
// nf_tables shows up as EAFNOSUPPORT, EPROTONOSUPPORT or ENOENT.
func classifyNFT(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, unix.EAFNOSUPPORT), errors.Is(err, unix.EPROTONOSUPPORT):
		return fmt.Errorf("%s: %w (%w)", op, ErrNFTablesMissing, err)
	}
	return classify(op, err)
}
