//! A linear probe (logistic regression) head with the same contracts as the dense head.
