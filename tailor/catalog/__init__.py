"""The shop's product catalog as uploads change it: rows parsed and validated in full (a JSON
array or a CSV file) before the store writes any of them."""
