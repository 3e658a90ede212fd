package main

import (
	"fmt"
	"io"

	"sigs.k8s.io/yaml"
)

// checkConfig validates the configuration from every source and prints the
// effective result. The configuration only ever names credential files, so
// printing it reveals no secret.
func checkConfig(args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig("check-config", args, stderr)
	if err != nil {
		return err
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("print configuration: %w", err)
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stdout, "WARNING:", w)
	}
	fmt.Fprintf(stdout, "configuration is valid; effective settings:\n%s", b)
	return nil
}
