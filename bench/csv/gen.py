#!/usr/bin/env python3
"""Writes a customers CSV (id, email, phone, city) for the `botlink links` benchmark.

Usage: gen.py [ROWS] > customers.csv

Two rows (at 1/3 and 2/3) carry an e-mail too long for a Telegram json link, so that the
benchmark also exercises the row-error path: expect exactly 2 errors on Telegram.
"""
import sys

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
cities = ["Moscow", "Kyiv", "Riga", "Vilnius", "Tallinn", "Almaty", "Tbilisi", "Yerevan"]
too_long = {rows // 3, 2 * rows // 3}
out = sys.stdout
out.write("id,email,phone,city\n")
for i in range(1, rows + 1):
    if i in too_long:
        email = f"a.very.long.address.number.{i}@example-company.com"
    else:
        email = f"user{i}@example.com"
    out.write(f"{i},{email},7900{i:07d},{cities[i % len(cities)]}\n")
