"""The desktop daemon that lives inside a computer: its X session, input through XTEST, screenshots, windows."""
