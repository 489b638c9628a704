module cairn.local/stack/node/apicheck

go 1.24.0
