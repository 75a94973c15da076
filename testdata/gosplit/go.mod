module gosplit

go 1.22
