package hostnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SysctlChange records a sysctl setup changed and its value before.
type SysctlChange struct {
	Key      string `json:"key"`
	Previous string `json:"previous"`
	Value    string `json:"value"`
}

// State is what setup did, so that teardown undoes exactly that. It is kept
// in <StateDir>/network-<name>.json and updated after every step, so a
// setup that crashed half-way is completed (or undone) by the next call.
type State struct {
	Version        int            `json:"version"`
	Config         Config         `json:"config"`
	CreatedBridge  bool           `json:"created_bridge,omitempty"`
	AddedAddress   bool           `json:"added_address,omitempty"`
	CreatedTap     bool           `json:"created_tap,omitempty"`
	CreatedMacvtap bool           `json:"created_macvtap,omitempty"`
	MacvtapDevice  string         `json:"macvtap_device,omitempty"`
	Tables         bool           `json:"tables,omitempty"`
	Sysctls        []SysctlChange `json:"sysctls,omitempty"`
}

const stateVersion = 1

// StatePath is where the state for cfg lives.
func StatePath(cfg *Config) string {
	return filepath.Join(cfg.StateDir, "network-"+cfg.Name()+".json")
}

// loadState returns nil, nil when there is no state file.
func loadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse state %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state %s: version %d, want %d", path, st.Version, stateVersion)
	}
	return &st, nil
}

// save writes the state atomically (temporary file and rename).
func (st *State) save(path string) error {
	st.Version = stateVersion
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write state %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state %s: %w", path, err)
	}
	return nil
}

// sysctl returns the recorded change for key, if any.
func (st *State) sysctl(key string) (SysctlChange, bool) {
	for _, s := range st.Sysctls {
		if s.Key == key {
			return s, true
		}
	}
	return SysctlChange{}, false
}
