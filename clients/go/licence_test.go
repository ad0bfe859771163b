package occupancy_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The module ships the repository's licence texts (a Go module zip holds
// only its own directory) and declares MIT OR Apache-2.0.
func TestLicenceShipped(t *testing.T) {
	for _, name := range []string{"LICENSE-MIT", "LICENSE-APACHE"} {
		ours, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("clients/go/%s: %v", name, err)
		}
		root, err := os.ReadFile("../../" + name)
		if err != nil {
			t.Fatalf("repository %s: %v", name, err)
		}
		if !bytes.Equal(ours, root) {
			t.Errorf("clients/go/%s differs from the repository root's; copy it again", name)
		}
	}
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mod), "SPDX-License-Identifier: MIT OR Apache-2.0") {
		t.Errorf("go.mod does not declare MIT OR Apache-2.0")
	}
}
