package config

import (
	"os"

	"github.com/pelletier/go-toml/v2"
)

// ControlSocketLenient reads only control.socket from the file at path,
// ignoring every other key and error, for the CLI to reach a running
// daemon when the file no longer loads (the daemon keeps the configuration
// it started with). It returns "" when the file cannot be read or parsed
// as TOML or sets no socket.
func ControlSocketLenient(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var lenient struct {
		Control struct {
			Socket string `toml:"socket"`
		} `toml:"control"`
	}
	if toml.Unmarshal(raw, &lenient) != nil {
		return ""
	}
	return lenient.Control.Socket
}
