// The etcd server, built by stack/kube.sh install: go.etcd.io/etcd/server/v3 is a library module
// (the etcd command lives in a module with replace directives), so this calls its entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
