"""Network pieces around nnU-Net's U-Net: projection and cluster heads, the patch discriminator,
feature taps by resolution, the EMA Mean Teacher and its export as an nnU-Net checkpoint."""
