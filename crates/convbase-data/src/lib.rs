//! Data stage: scans a data set into a manifest, loads and resizes images for the network.
