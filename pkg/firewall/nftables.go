package firewall

import "errors"

func newNFTables(opts Options) (Backend, error) { return nil, errors.New("nftables: not yet") }

// Detect picks the backend for "auto".
func Detect(ns string) (string, string) { return "iptables", "default" }
