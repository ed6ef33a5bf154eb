package main

import "github.com/jailkeeper/jailkeeper/internal/cliflag"

// The subcommands parse their flags as jailkeeperd parses the daemon's.
var (
	parseInterspersed = cliflag.ParseInterspersed
	newFlagSet        = cliflag.NewFlagSet
	usageError        = cliflag.UsageStatus
)
