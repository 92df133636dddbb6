package main

import (
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"

	"github.com/pgcloak/pgcloak/policy"
)

// loadConfig reads the config file strictly (policy.Parse names the line of
// any unknown field), then lets PGCLOAK_<SECTION>_<KEY> environment
// variables override its scalar settings through viper, then validates the
// result.
func loadConfig(path string) (*policy.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return configFrom(path, data)
}

// configFrom is loadConfig of data, the content of the file at path.
func configFrom(path string, data []byte) (*policy.Config, error) {
	cfg, err := policy.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := applyEnv(cfg, data); err != nil {
		return nil, err
	}
	if ps := cfg.Validate(); len(ps) > 0 {
		return nil, fmt.Errorf("%s: %w", path, ps)
	}
	return cfg, nil
}

// applyEnv overlays environment variables on the scalar sections (server,
// upstream, keystore, audit). The policy lists stay as the file has them, with
// their line numbers.
func applyEnv(cfg *policy.Config, data []byte) error {
	v := viper.New()
	v.SetConfigType("yaml")
	v.SetEnvPrefix("PGCLOAK")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	defaults := policy.Defaults()
	for key, val := range scalarLeaves(reflect.ValueOf(defaults), "") {
		v.SetDefault(key, val)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return err
	}
	delete(raw, "policy")
	if err := v.MergeConfigMap(raw); err != nil {
		return err
	}
	var merged policy.Config
	err := v.Unmarshal(&merged, func(dc *mapstructure.DecoderConfig) {
		dc.TagName = "mapstructure"
		dc.WeaklyTypedInput = true
	})
	if err != nil {
		return fmt.Errorf("applying PGCLOAK_* environment overrides: %w", err)
	}
	cfg.Server, cfg.Upstream, cfg.Keystore, cfg.Audit = merged.Server, merged.Upstream, merged.Keystore, merged.Audit
	return nil
}

// scalarLeaves lists the dotted keys of every scalar field outside the
// policy section, with its value, so that viper knows every key an
// environment variable may override.
func scalarLeaves(v reflect.Value, prefix string) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("mapstructure")
		if name == "" || name == "policy" {
			continue
		}
		key := prefix + name
		if f.Type.Kind() == reflect.Struct {
			for k, val := range scalarLeaves(v.Field(i), key+".") {
				out[k] = val
			}
			continue
		}
		out[key] = v.Field(i).Interface()
	}
	return out
}
