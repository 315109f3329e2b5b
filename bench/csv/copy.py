#!/usr/bin/env python3
"""Baseline: read a CSV and write it back with Python's csv module (no link building)."""
import csv
import sys

with open(sys.argv[1], newline="") as src, open(sys.argv[2], "w", newline="") as dst:
    w = csv.writer(dst)
    for row in csv.reader(src):
        w.writerow(row)
