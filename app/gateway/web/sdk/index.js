export { Client, newCmid, } from './client.js';
export { Emitter } from './emitter.js';
export { ParleyError } from './errors.js';
export * from './frames.js';
export { devToken } from './http.js';
