module goshort

go 1.22
