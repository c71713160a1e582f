//! VGG16 convolutional base on candle, with ImageNet weights loaded from every source a user has.
