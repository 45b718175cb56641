// The live view's AudioWorklet processor (app/pages/live.js loads it): hands each block of
// the microphone, mixed to mono, to the page, which streams it.
"use strict";

class UvacCapture extends AudioWorkletProcessor {
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const block = new Float32Array(channels[0].length);
      for (const channel of channels) {
        for (let index = 0; index < block.length; index += 1) {
          block[index] += channel[index] / channels.length;
        }
      }
      this.port.postMessage(block, [block.buffer]);
    }
    return true;
  }
}

registerProcessor("uvac-capture", UvacCapture);
