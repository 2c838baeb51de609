"""Calibration statistics and QDQ fake-quant model building for the simulator."""
