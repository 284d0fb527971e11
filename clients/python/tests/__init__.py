"""Tests of the ppx Python package (unittest).  Run from clients/python:
    PPXD_BUILD=$PWD/../../build /usr/bin/python3 -m unittest discover -s tests -t .
tests/test_python.c runs each module from the normal Criterion test run."""
