module cairn.local/stack/node/pause

go 1.24.0
