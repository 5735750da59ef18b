module github.com/qrtalk/qrtalk

go 1.26
