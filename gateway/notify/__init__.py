"""Budget alert notifications: payloads, signatures and their background delivery."""
