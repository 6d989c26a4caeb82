"""edge-sdk calibration (controller fitting, ECE, INT8 calibration data).

Nothing is here yet: the controller arrives with issue 6.
"""
