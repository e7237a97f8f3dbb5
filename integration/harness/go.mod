module github.com/socikit/socikit/integration/harness

go 1.26.8

replace github.com/socikit/socikit => ../..
