// Builds the Traefik ingress controller (stack/node.sh install). Traefik's own go.mod replaces
// and excludes modules; a dependency's replace/exclude directives do not apply to the main
// module, so they are repeated here (from traefik v3.6.12's go.mod). v3.7 cannot be built this
// way: it requires github.com/traefik/traefik/dynamic/ext, a nested module that exists only as a
// local replace (./pkg/config/dynamic/ext), which the module zip leaves out.
module cairn.local/stack/node/traefik

go 1.25.0

require github.com/traefik/traefik/v3 v3.6.12

replace (
	github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20200324110947-a37a7636d23e
	github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59
	github.com/mailgun/minheap => github.com/containous/minheap v0.0.0-20190809180810-6e71eb837595
)

exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible
