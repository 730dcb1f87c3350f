"""Fields and electron transport of a set (ALGORITHMS.md §1).

Pure functions on floats or numpy arrays.  Units: voltages V, gaps cm, fields V/cm,
reduced fields Td, pressure bar, temperature K, number density cm⁻³, speed mm/µs,
time µs.
"""

from __future__ import annotations

import numpy as np

K_B = 1.380649e-23  # J/K
BAR_TO_PA = 1.0e5

# Drift-speed parametrisation v(x) = p0 (1 - exp(-p1 x)) + p2 x / (1 + p3 x), x in Td.
DRIFT_SPEED_PARAMS = (0.92809704, 17.17333489, 0.51193002, 0.30107278)


def drift_field(v_gate, drift_gap_cm):
    """Drift field in V/cm: gate voltage over the drift gap."""
    return np.asarray(v_gate, dtype=float) / drift_gap_cm


def el_field(v_anode, v_gate, el_gap_cm):
    """Electroluminescence field in V/cm: (anode − gate) over the EL gap."""
    return (np.asarray(v_anode, dtype=float) - np.asarray(v_gate, dtype=float)) / el_gap_cm


def number_density(pressure_bar, temperature_k):
    """Gas number density in cm⁻³ from the ideal gas law."""
    n_m3 = pressure_bar * BAR_TO_PA / (K_B * temperature_k)
    return n_m3 * 1e-6


def reduced_field(field_v_cm, density_cm3):
    """Reduced field E/n in Td (1 Td = 1e-17 V·cm²)."""
    return np.asarray(field_v_cm, dtype=float) / density_cm3 * 1e17


def drift_speed(reduced_drift_field_td):
    """Electron drift speed in mm/µs from the reduced drift field in Td."""
    p0, p1, p2, p3 = DRIFT_SPEED_PARAMS
    x = np.asarray(reduced_drift_field_td, dtype=float)
    return p0 * (1.0 - np.exp(-p1 * x)) + p2 * x / (1.0 + p3 * x)


def drift_time(drift_gap_cm, speed_mm_us):
    """Drift time in µs across ``drift_gap_cm`` at ``speed_mm_us``."""
    return drift_gap_cm * 10.0 / np.asarray(speed_mm_us, dtype=float)


def set_transport(v_gate, v_anode, *, pressure_bar, temperature_k, drift_gap_cm, el_gap_cm):
    """Every §1 quantity of a set as a dict of floats (or arrays), keyed by result name."""
    n = number_density(pressure_bar, temperature_k)
    e_drift = drift_field(v_gate, drift_gap_cm)
    e_el = el_field(v_anode, v_gate, el_gap_cm)
    red_drift = reduced_field(e_drift, n)
    speed = drift_speed(red_drift)
    return {
        "drift_field": e_drift,
        "EL_field": e_el,
        "gas_density": n,
        "red_drift_field": red_drift,
        "red_EL_field": reduced_field(e_el, n),
        "speed_drift": speed,
        "time_drift": drift_time(drift_gap_cm, speed),
    }
