module gocgoshort

go 1.21
