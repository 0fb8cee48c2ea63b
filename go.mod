module github.com/mycel-net/mycel

go 1.26
