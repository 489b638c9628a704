module cairn.local/stack/kind/pause

go 1.24.0
