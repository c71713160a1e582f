//! The seed's dense head: Flatten -> Dense(256, relu) -> Dropout(0.5) -> Dense(1, sigmoid).
