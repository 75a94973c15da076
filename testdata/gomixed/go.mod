module gomixed

go 1.21
