// compose-check reads docker-compose.yml the way Docker Compose v2 does — with its own Go
// loader, github.com/compose-spec/compose-go/v2 — and prints the resolved project as JSON
// (every profile enabled, variables interpolated from the given env file), or the loader's
// error and exit status 1. tests/unit/deploy/test_compose.py runs it and checks the result.
//
//	compose-check [-env-file FILE] [-profile NAME]... docker-compose.yml
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

type profiles []string

func (p *profiles) String() string     { return strings.Join(*p, ",") }
func (p *profiles) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	envFile := flag.String("env-file", "", "env file for interpolation (as `docker compose --env-file`)")
	var prof profiles
	flag.Var(&prof, "profile", "profile to enable (repeatable; default: every profile)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-env-file FILE] [-profile NAME]... docker-compose.yml")
		os.Exit(2)
	}
	file, err := filepath.Abs(flag.Arg(0))
	if err != nil {
		fail(err)
	}
	if len(prof) == 0 {
		prof = profiles{"*"}
	}
	opts := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithProfiles(prof),
		cli.WithResolvedPaths(true),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
	}
	if *envFile != "" {
		opts = append(opts, cli.WithEnvFiles(*envFile), cli.WithDotEnv)
	} else {
		opts = append(opts, cli.WithOsEnv)
	}
	options, err := cli.NewProjectOptions([]string{file}, opts...)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(out)
	fmt.Println()
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "compose-check: %v\n", err)
	os.Exit(1)
}
