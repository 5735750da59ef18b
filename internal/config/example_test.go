package config_test

import (
	"fmt"

	"github.com/qrtalk/qrtalk/internal/config"
)

// Flags win over the environment, which wins over the config file and the
// defaults.
func ExampleLoad() {
	env := map[string]string{"HOME": "/home/ann", "QRTALKD_REGISTRATION": "open", "QRTALKD_LISTEN": ":9000"}
	cfg, err := config.Load([]string{"--listen", "127.0.0.1:8443", "--max-blob-size", "20MiB"}, config.Environment{
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Listen, cfg.Registration, cfg.MaxBlobSize, cfg.Data)
	// Output: 127.0.0.1:8443 open 20971520 /home/ann/.local/share/qrtalkd
}
